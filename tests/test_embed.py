"""ragwall.embed: the states pass is not disturbed by queries embedded in another thread (the
shared model runs one hooked layer for both: a reindex beside a running server)."""

from __future__ import annotations

import threading

import numpy as np


def test_states_are_captured_for_this_pass_only(encoder):
    texts = [
        f"passage {i}: the pump seal is checked every spring in building {i}." * (1 + i % 4)
        for i in range(48)
    ]
    expected = encoder.encode(texts)
    stop = threading.Event()

    def queries() -> None:
        while not stop.is_set():
            encoder.encode(["a short query"])

    other = threading.Thread(target=queries, daemon=True)
    other.start()
    try:
        for _ in range(3):
            for idx, vecs, states in encoder.iter_with_states(texts, layer=3, batch_size=8):
                assert len(states) == len(idx)
                for i, st in zip(idx, states, strict=True):
                    n = len(encoder.tokenizer(texts[i], truncation=True)["input_ids"])
                    assert st.hidden.shape[0] == n
                np.testing.assert_allclose(vecs, expected[idx], atol=1e-4)
    finally:
        stop.set()
        other.join()
