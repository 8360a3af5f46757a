"""The web view: the pages `evalrows serve` serves next to its API, and the one-file HTML
report of `evalrows report`, rendered from the same views and templates."""
