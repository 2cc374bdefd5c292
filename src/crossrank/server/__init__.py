"""The HTTP server: one process, many models, the rerank APIs clients already speak.

``create_app(config)`` builds the FastAPI app; each API dialect lives in its own module and only
translates requests and responses; the batcher coalesces concurrent requests into engine calls.
"""
