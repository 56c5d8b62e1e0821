"""The audit trail's tools: seal the hash chain, verify it, anchor its head."""
