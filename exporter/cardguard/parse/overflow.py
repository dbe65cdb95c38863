"""The one value that entries past a cap fold into, so cardguard's own output stays bounded.

Families, labels, heap owners, goroutine groups and label values kept beyond
a fixed number are summed into one entry with this name (or label value)
instead of adding new ones: a churning top-N list as label values is what
Prometheus' maintainers refuse to export. Defined here, in the parse layer,
so that every layer that caps a list can use the same value.
"""

from __future__ import annotations

OTHER = "__other__"
