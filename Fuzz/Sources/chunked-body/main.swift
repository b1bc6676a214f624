import FuzzSupport

FuzzDriver.run(fuzzChunkedBody)
