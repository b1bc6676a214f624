-- wrk script for scripts/bench-jwt: every request carries "Authorization: Bearer <token>", the tokens read from
-- the file given as the first argument after "--" (one per line), round-robin. Requests are built once in init()
-- so wrk spends as little CPU as possible per request.
local requests = {}
local count = 0
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    requests[count] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
  end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
