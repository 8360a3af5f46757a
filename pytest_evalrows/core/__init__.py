"""The pure core: row ids, values, outcomes, the row documents and models, the row a test
fills. Imports nothing else of the package (``errors`` aside) and no pytest."""
