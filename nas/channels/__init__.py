"""Channel search: the channels space's machinery (dependency groups, evaluators, AMC agent, finalisation)."""
