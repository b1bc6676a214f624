// SluiceMemcached: a small memcached client on SwiftNIO (the meta protocol of memcached 1.6+: `mg`, `ms`, `ma`, `md`,
// `mn` with opaque tokens; pipelined connections; a pool per server; a ketama continuum over servers) and the
// memcached store of issue 21. No Swift memcached client exists on these machines; this one does only what the store
// needs, built like SluiceRedis.
