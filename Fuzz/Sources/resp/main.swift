import FuzzSupport

FuzzDriver.run(fuzzRESP)
