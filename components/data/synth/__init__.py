"""The synthetic video generator's parts; ``components.data.synthetic`` assembles datasets from them."""
