-- Argo CD health of an agentops.dev Quota, from the conditions the operator writes.
--   Ready=False (invalid window, time zone...)  -> Degraded
--   Ready=True                                   -> Healthy, Exhausted or not: an exhausted Quota is the
--     budget doing its job until resetAt, not a broken object, so it does not turn the Application
--     Degraded; the message says so (and the Exhausted condition and QuotaExhausted Event remain).
local hs = {status = "Progressing", message = "Waiting for the operator to report on the Quota"}
local st = obj.status
if st == nil or st.conditions == nil then
  return hs
end
local gen = obj.metadata.generation
if gen ~= nil and (st.observedGeneration == nil or st.observedGeneration < gen) then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local ready, exhausted, warning = nil, nil, nil
for _, c in ipairs(st.conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Exhausted" then
    exhausted = c
  elseif c.type == "Warning" then
    warning = c
  end
end
if ready == nil then
  return hs
end
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end
hs.status = "Healthy"
local spec = obj.spec or {}
local usage = "used " .. tostring(st.used or 0) .. " of " .. tostring(spec.limit or 0)
if st.resetAt ~= nil then
  usage = usage .. ", resets at " .. st.resetAt
end
if exhausted ~= nil and exhausted.status == "True" then
  hs.message = "Exhausted: " .. usage
elseif warning ~= nil and warning.status == "True" then
  hs.message = "Warning: " .. usage
else
  hs.message = usage
end
return hs
