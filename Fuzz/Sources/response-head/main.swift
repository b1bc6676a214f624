import FuzzSupport

FuzzDriver.run(fuzzResponseHead)
