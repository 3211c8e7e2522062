"""No import cycle in the package, not even one made only of type-checking imports."""

from __future__ import annotations

import grimp


def test_no_import_cycle_even_for_typing() -> None:
    graph = grimp.build_graph("async_uploader", exclude_type_checking_imports=False)
    ours = [m for m in graph.modules if m != "async_uploader"]
    cycles = {
        tuple(sorted((a, b)))
        for a in ours
        for b in graph.find_modules_directly_imported_by(a)
        if b != "async_uploader" and graph.chain_exists(importer=b, imported=a)
    }
    assert cycles == set()
