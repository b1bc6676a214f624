import FuzzSupport

FuzzDriver.run(fuzzConfig)
