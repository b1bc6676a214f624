// The benchmark package (Benchmarks/) sees the limiter through this one product.
@_exported import SluiceConfig
@_exported import SluiceLimiter
