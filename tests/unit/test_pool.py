from grdr_plugin.pool import ids_to_keep


def test_keeps_whole_ids_within_the_cap():
    assert ids_to_keep([100, 100, 100, 1], 300) == 3
    assert ids_to_keep([100, 150, 100], 300) == 2


def test_keeps_at_least_one_id_even_when_it_alone_exceeds_the_cap():
    assert ids_to_keep([500, 1], 300) == 1


def test_empty():
    assert ids_to_keep([], 300) == 0
