"""The lab's devices.

Wire devices (this package) run inside the user-space wire and see every frame
of the link they sit on: on-path injectors (``rst``, ``dns``, ``blockpage``) get
copies and race the real packets; in-path ones (``dropper``, ``ecn``, ``idle``,
``tlssize``) decide whether frames go on; ``frontbox`` rewrites some as another
sender would send them, ``optstrip`` overwrites TCP options with NOPs.  Kernel devices (``kernel``: address
block, PMTU black hole) are firewall rules and MTUs in a router namespace.
"""

from .blockpage import BlockpageInjector
from .dns import DnsInjector
from .dropper import Dropper
from .ecn import EcnBlackhole
from .frontbox import FrontBox
from .idle import IdleFirewall
from .optstrip import OptionStripper
from .rst import RstInjector
from .tlssize import TlsSizeBreaker

WIRE_DEVICES = {
    cls.kind: cls
    for cls in (RstInjector, DnsInjector, BlockpageInjector, Dropper, EcnBlackhole, IdleFirewall, TlsSizeBreaker,
                FrontBox, OptionStripper)
}
