"""One module per benchmark section; each exposes ``run(ctx) -> list[Row]``."""
