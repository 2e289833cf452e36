"""Response caches: an exact-match tier, then a semantic tier with measured precision.

A cache hit answers without calling the provider, so a wrong hit hands one user's answer to another
user's different question. Hence: scope first (tenant, feature, model, everything else that changes
the answer, the preceding turns), similarity second, then cheap guards, then verification sampling.
The `cache` pipeline stage (`faregate.pipeline.cache`) puts the pieces together.

Modules, in reading order:

``entry``       `CachedAnswer` and `CacheEntry`: what is stored and how it is found again.
``keys``        request normalisation: the exact-match key, the scope hash, the query text.
``embeddings``  the offline sentence-embedding model (all-MiniLM-L6-v2; ONNX Runtime or NumPy, no torch).
``onnx_bert``   the same BERT as an ONNX graph built in memory from the packaged weights.
``guards``      cheap refusals: numbers, negation or named entities that differ between two queries.
``index``       the in-process vector index (exact for small scopes, HNSW for large ones).
``store``       the store protocol; ``sqlite_store`` (default) and ``postgres_store`` (pgvector).
``replay``      a cached answer rendered in the client's protocol, JSON or a proper SSE stream.
``precision``   verification sampling: the precision estimate, its bound, the threshold it tightens.
``evaluate``    `faregate cache eval`: precision, recall and hit rate on pairs or an intent stream.
``report``      reading eval inputs and printing eval, stats and clear results (tables, JSON).
"""
