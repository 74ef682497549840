"""Upstream model providers behind one interface (base.ProviderClient)."""
