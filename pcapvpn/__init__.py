"""pcapvpn: a packet-capture analyzer for VPN troubleshooting."""

__version__ = "0.1.0"
