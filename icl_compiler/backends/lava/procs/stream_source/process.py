"""StreamSource: Lava's stock ``Injector`` (the host sends one vector per step through a channel,
``send``), with ports typed for the network it feeds: int32 payloads in fixed point.

Why not the stock Injector as is: its process model types its ports as float, and a fixed-point
``Dense`` fed with floats fails (``right_shift`` of a float ``weights.dot(s_in)``).  Why not a
``RingBuffer`` source whose ``data`` the host rewrites: Lava sets a Var one element per message
(804 × 17 payloads took 0.46 s per token on the few-shot model); a channel carries the vector in
one message.  Behaviour is the Injector's (``lava/proc/io/injector.py``): each step the model
takes one vector from the channel (blocking until there is one, the default ``ChannelConfig``)
and sends it on ``out_port``.
"""
from __future__ import annotations

from lava.proc.io.injector import Injector


class StreamSource(Injector):
    pass
