"""Inbound edges of the hub: connector webhooks, raw native topics, table polling.

Each turns native records into canonical envelopes through the system's connector and writes
them, with the rejections, in ONE store transaction: envelopes to the outbox (the relay
publishes them to canonical.<entity>), rejections to the dead-letter index and topic.
A webhook answers only after that commit, so what it accepted survives a crash of the hub
or of the broker.
"""
