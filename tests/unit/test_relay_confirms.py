"""The relay's reading of publisher confirms: which messages at the head of a batch the broker acked,
whatever the order and grouping of its answers (RabbitMQ may confirm out of order, or many at once)."""

from shared.events.relay import _Confirms


def confirms_for(published: int) -> _Confirms:
    confirms = _Confirms()
    confirms.published = published
    return confirms


def test_acks_one_by_one_settle_the_batch_once_the_last_arrives():
    confirms = confirms_for(3)
    for tag in (1, 2):
        confirms.on_ack(tag, False)
        assert not confirms.settled
    confirms.on_ack(3, False)
    assert confirms.settled and confirms.acked_through == 3


def test_one_multiple_ack_confirms_every_tag_up_to_its_own():
    confirms = confirms_for(5)
    confirms.on_ack(4, True)
    assert (confirms.acked_through, confirms.settled) == (4, False)
    confirms.on_ack(5, True)
    assert confirms.settled


def test_an_ack_ahead_of_an_unanswered_tag_counts_only_once_the_gap_is_acked():
    confirms = confirms_for(4)
    confirms.on_ack(3, False)
    confirms.on_ack(4, False)
    assert confirms.acked_through == 0
    confirms.on_ack(1, False)
    assert confirms.acked_through == 1
    confirms.on_ack(2, False)
    assert confirms.acked_through == 4 and confirms.settled


def test_a_multiple_ack_past_acks_received_ahead_absorbs_them():
    confirms = confirms_for(6)
    confirms.on_ack(3, False)
    confirms.on_ack(5, False)
    confirms.on_ack(4, True)
    assert confirms.acked_through == 5


def test_a_nack_settles_once_every_tag_before_it_is_answered_and_only_those_count():
    confirms = confirms_for(5)
    confirms.on_nack(3, False)
    confirms.on_ack(1, False)
    assert not confirms.settled  # tag 2 may still be acked: wait for it
    confirms.on_ack(2, False)
    assert confirms.settled and confirms.acked_through == 2


def test_a_multiple_nack_refuses_the_first_unanswered_tag():
    confirms = confirms_for(5)
    confirms.on_ack(1, False)
    confirms.on_nack(4, True)
    assert confirms.settled and confirms.acked_through == 1
