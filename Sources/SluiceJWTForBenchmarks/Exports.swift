// The benchmark package (Benchmarks/) sees the JWT verifier and the config model through this one product.
@_exported import SluiceConfig
@_exported import SluiceJWT
