"""The partner consumer service, its sinks, receipts and feedback."""
