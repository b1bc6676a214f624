// SluiceRedis: a small Redis client on SwiftNIO (RESP2/RESP3 codec, pipelined connections, a pool) and the Redis
// store of SPEC §8. No Swift Redis client exists on these machines; this one does only what the store needs.
