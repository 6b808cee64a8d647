"""The source-record flow: every canonical message lands here first.

It keeps the newest version of each record per source system, refuses stale updates (DESIGN
rule 3), writes lineage, and publishes only real changes to ``changes.<entity>``, the feed the
identity, sync and urge flows consume.
"""
