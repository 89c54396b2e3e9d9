-- dfaas.lua: the weighted choice among peers with per-peer caps, for the
-- configuration proxy/haproxy generates (loaded with lua-load). HAProxy's
-- balancing algorithms cannot skip a server whose cap for the current
-- second is spent, so this converter picks the server and the
-- configuration sends the request there with "use-server %[var(txn.peer)]".
--
-- The routes map (its path in the DFAAS_ROUTES environment variable) holds,
-- per function, the plan's peers as "server:weight:rate:burst" joined by
-- commas. The driver updates it with the runtime API's set map, one
-- function at a time, so a request sees either the old route or the new one.
--
-- Per request (http-request set-var(txn.peer) var(txn.fn),lua.dfaas_pick):
-- smooth weighted round robin picks a peer; if its token bucket (rate
-- req/s, burst tokens) is empty, the others are tried by decreasing weight.
-- A new route goes on with the round robin of the one it replaces.
-- The converter returns the first with a token; none returns the empty
-- string, and the configuration unsets txn.peer (a converter's nil is not a
-- failed sample in HAProxy 2.6). This is the pick rule of
-- package proxy (proxy/pick.go); the golden vectors of proxy/proxytest hold
-- the two to the same sequences.
--
-- A converter, not an action: HAProxy builds a transaction object (and its
-- fetch, converter and HTTP classes) for every Lua action call, which cost a
-- quarter of the forwarded path's throughput; a converter gets the
-- function's name alone.

local routes_map = Map.new(os.getenv("DFAAS_ROUTES"), Map._str)

-- routes[fn] = {raw = map value, peers = {{name, weight, bucket}...},
--               current = {smooth weighted round robin state}}
local routes = {}
-- buckets[fn][server] = {rate, burst, tokens, at}: they outlive routes, so a
-- new plan does not refill a cap already spent.
local buckets = {}

-- The driver's tests give the converter the argument "clock": its input is
-- then "<function> <arrival time in microseconds>" (the configuration
-- appends a request header), so that the golden vectors run on a clock the
-- test controls. An argument, not the environment, which HAProxy inherits
-- from the agent.

local function clock()
  local t = core.now()
  return t.sec + t.usec / 1e6
end

-- parse reads a route; the round robin goes on from old's, the route it
-- replaces (rule 4 of the pick rule): peers still in it keep their values,
-- new ones start at zero, and the values are shifted to sum to zero.
local function parse(fn, raw, at, old)
  local peers, seen = {}, {}
  local fb = buckets[fn] or {}
  buckets[fn] = fb
  for name, w, r, b in string.gmatch(raw, "([^:,]+):([^:,]+):([^:,]+):([^:,]+)") do
    local weight, rate, burst = tonumber(w), tonumber(r), tonumber(b)
    if weight and rate and burst and weight > 0 and rate > 0 and burst >= 1 then
      local bk = fb[name]
      if bk == nil then
        bk = {tokens = burst, at = at}
        fb[name] = bk
      end
      bk.rate, bk.burst = rate, burst
      if bk.tokens > burst then bk.tokens = burst end
      peers[#peers + 1] = {name = name, weight = weight, bucket = bk}
      seen[name] = true
    end
  end
  for name in pairs(fb) do
    if not seen[name] then fb[name] = nil end
  end
  -- Stable order by decreasing weight: the fallback order.
  for i = 2, #peers do
    local p, j = peers[i], i - 1
    while j >= 1 and peers[j].weight < p.weight do
      peers[j + 1] = peers[j]
      j = j - 1
    end
    peers[j + 1] = p
  end
  local was = {}
  if old ~= nil then
    for i, p in ipairs(old.peers) do was[p.name] = old.current[i] end
  end
  local current, sum = {}, 0
  for i = 1, #peers do
    current[i] = was[peers[i].name] or 0
    sum = sum + current[i]
  end
  for i = 1, #peers do current[i] = current[i] - sum / #peers end
  return {raw = raw, peers = peers, current = current}
end

-- take takes a token at time at if the bucket holds one; a clock that went
-- back adds none.
local function take(bk, at)
  if at > bk.at then
    local tokens = bk.tokens + (at - bk.at) * bk.rate
    if tokens > bk.burst then tokens = bk.burst end
    bk.tokens, bk.at = tokens, at
  end
  if bk.tokens < 1 then return false end
  bk.tokens = bk.tokens - 1
  return true
end

local function pick(fn, at)
  local raw = routes_map:lookup(fn)
  if raw == nil or raw == "" then
    routes[fn] = nil
    return ""
  end
  local rt = routes[fn]
  if rt == nil or rt.raw ~= raw then
    rt = parse(fn, raw, at, rt)
    routes[fn] = rt
  end
  local peers, current = rt.peers, rt.current
  local n = #peers
  if n == 0 then return "" end
  local best, total = 1, 0
  for i = 1, n do
    current[i] = current[i] + peers[i].weight
    total = total + peers[i].weight
    if current[i] > current[best] then best = i end
  end
  current[best] = current[best] - total
  if take(peers[best].bucket, at) then return peers[best].name end
  for i = 1, n do
    if i ~= best and take(peers[i].bucket, at) then return peers[i].name end
  end
  return ""
end

core.register_converters("dfaas_pick", function(input, mode)
  if input == nil or input == "" then return "" end
  if mode == "clock" then
    local fn, us = string.match(input, "^(%S+) (%d+)$")
    if fn == nil then return "" end
    return pick(fn, tonumber(us) / 1e6)
  end
  return pick(input, clock())
end)
