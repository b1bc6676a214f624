import FuzzSupport

FuzzDriver.run(fuzzRequestHead)
