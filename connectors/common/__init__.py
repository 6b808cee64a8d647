"""Machinery every connector shares: parsing, value maps, the Connector description, file
import, watermark polling, the outbound sink, status counters and the simulator base."""
