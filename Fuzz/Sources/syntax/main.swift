import FuzzSupport

FuzzDriver.run(fuzzSyntax)
