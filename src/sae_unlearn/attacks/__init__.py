"""Attacks that try to bring forgotten knowledge back: the proof that it is gone, not muted.

- ``relearn``: fine-tune on some of a target's facts, measure recall of its other facts;
- ``probes``: linear probes on the residual stream (known vs unknown; attribute values);
- ``paraphrase``: recall under lead-ins, a longer context and question form; free generation;
- ``suite``: runs them all on one model and returns ``metrics.json`` keys (docs/attacks.md).
"""
