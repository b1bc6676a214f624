import FuzzSupport

FuzzDriver.run(fuzzMemcachedReplies)
