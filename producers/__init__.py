"""The country producer service and its input adapters."""
