import FuzzSupport

FuzzDriver.run(fuzzPath)
