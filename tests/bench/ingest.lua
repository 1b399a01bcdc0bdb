-- wrk script for tests/bench/ingest.sh: replays pre-signed requests from
-- the file named by the first script argument; thread k of n sends
-- requests k, k+n, k+2n, ... so no two threads send the same call.
-- Answers are counted by ingest's /metrics, not here, to keep wrk light.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local nthreads = tonumber(args[2])
  reqs = {}
  local pos, i = 1, 0
  while true do
    local e = string.find(data, "\0", pos, true)
    if not e then break end
    if i % nthreads == tid then
      reqs[#reqs + 1] = string.sub(data, pos, e - 1)
    end
    i = i + 1
    pos = e + 1
  end
  idx = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end
