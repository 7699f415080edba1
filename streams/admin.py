"""Topic administration with confluent-kafka's AdminClient: create what the table declares.

Must not import faust: this runs in CLIs and tests before any worker exists.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings
from streams.topics import TOPICS, TopicSpec

_ADMIN_TIMEOUT_SECONDS = 30.0


class TopicMismatch(RuntimeError):
    """Raised when an existing topic's partition count differs from the declared one.

    A co-partitioned topic with another count would break the rule that partition p of
    every customer-keyed topic belongs to one task.
    """


def admin_client(bootstrap_servers: str) -> AdminClient:
    """An AdminClient for ``bootstrap_servers``."""
    return AdminClient({"bootstrap.servers": bootstrap_servers})


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create every topic in ``specs`` that does not exist; check the ones that do.

    Returns:
        The names of the topics created now.

    Raises:
        TopicMismatch: an existing topic has another partition count.
        KafkaException: the broker refused a creation for another reason.
    """
    admin = admin_client(settings.bootstrap_servers)
    existing = admin.list_topics(timeout=_ADMIN_TIMEOUT_SECONDS).topics
    wanted = {f"{settings.topic_prefix}{spec.name}": spec for spec in specs}
    for name, spec in wanted.items():
        if name in existing:
            have = len(existing[name].partitions)
            want = spec.partitions(settings.partitions)
            if have != want:
                raise TopicMismatch(f"{name} has {have} partitions, declared {want}")
    new = [
        NewTopic(
            name,
            num_partitions=spec.partitions(settings.partitions),
            replication_factor=settings.replication_factor,
            config=dict(spec.config),
        )
        for name, spec in wanted.items()
        if name not in existing
    ]
    if not new:
        return []
    for future in admin.create_topics(new, operation_timeout=_ADMIN_TIMEOUT_SECONDS).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [topic.topic for topic in new]
