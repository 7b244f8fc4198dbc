"""The service's stanza counts: tags appended as stanzas pass, tallied by kind."""

from chinwag.server.stats import ServerStats


def test_settle_tallies_the_tags_by_kind_and_empties_the_same_lists():
    stats = ServerStats()
    received, sent = stats.received, stats.sent
    received.extend(["message", "message", "presence", "iq"])
    sent.extend(["message", "unexpected"])

    stats.settle()

    assert stats.stanzas_in == {"message": 2, "presence": 1, "iq": 1}
    assert stats.stanzas_out == {"message": 1, "presence": 0, "iq": 0, "other": 1}
    assert stats.received is received and stats.sent is sent  # the streams keep these
    assert received == [] and sent == []
    received.append("iq")
    stats.settle()
    assert stats.stanzas_in["iq"] == 2


def test_sign_ins_are_counted_by_mechanism():
    stats = ServerStats()
    stats.signed_in("PLAIN")
    stats.signed_in("PLAIN")
    stats.sign_in_failed("SCRAM-SHA-1")
    assert (stats.sign_ins, stats.sign_in_failures) == ({"PLAIN": 2}, {"SCRAM-SHA-1": 1})
