"""lm-eval's two warnings that do not apply to the suite's call are dropped; its other messages are not."""

import logging

from benchmark.pipeline.behaviour import KNOWN_LM_EVAL_NOISE, silence_known_lm_eval_noise


def test_known_lm_eval_warnings_are_dropped_and_others_kept(caplog):
    silence_known_lm_eval_noise()
    silence_known_lm_eval_noise()  # twice: still one filter per logger
    for name, text in KNOWN_LM_EVAL_NOISE.items():
        logger = logging.getLogger(name)
        assert len(logger.filters) == 1
        with caplog.at_level(logging.WARNING, logger=name):
            logger.warning("entity_tracking: " + text + " and the rest of the message")
            logger.warning("a real problem")
    assert [r.getMessage() for r in caplog.records] == ["a real problem", "a real problem"]
