import FuzzSupport

FuzzDriver.run(fuzzDifferential)
