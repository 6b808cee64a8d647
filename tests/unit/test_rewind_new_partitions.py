"""After a broker loss a flow's consumer starts each partition new to it at the log's start."""

from __future__ import annotations

from aiokafka import TopicPartition

from hub.core.runner import RewindNewPartitions


class _Consumer:
    def __init__(self) -> None:
        self.rewound: list[set[TopicPartition]] = []

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.rewound.append(set(tps))


def _tps(*ps: int) -> set[TopicPartition]:
    return {TopicPartition("canonical.customer", p) for p in ps}


async def test_a_partition_that_moves_here_later_is_read_from_the_start_too() -> None:
    consumer = _Consumer()
    rewind = RewindNewPartitions(consumer, "records")  # type: ignore[arg-type]
    await rewind.on_partitions_assigned(_tps(0, 1))
    rewind.to_commit.clear()  # the runner committed their start positions
    # a process of the lost log held partition 2 and stopped: it moves here with its offsets
    await rewind.on_partitions_assigned(_tps(0, 1, 2))
    assert consumer.rewound == [_tps(0, 1), _tps(2)]
    assert rewind.to_commit == _tps(2) and not rewind.done


async def test_once_the_loss_is_settled_a_rebalance_keeps_the_committed_offsets() -> None:
    consumer = _Consumer()
    rewind = RewindNewPartitions(consumer, "records")  # type: ignore[arg-type]
    await rewind.on_partitions_assigned(_tps(0))
    rewind.to_commit.clear()
    assert rewind.done
    rewind.settled = True
    await rewind.on_partitions_assigned(_tps(0, 3))
    assert consumer.rewound == [_tps(0)]
