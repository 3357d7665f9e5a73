-- Argo CD health of an agentops.dev Agent, from the phase the operator writes in status.
-- Healthy -> Healthy; Pending, Progressing -> Progressing; Degraded -> Degraded; Paused -> Suspended
-- (a canary pause or a blue-green preview waiting for `kubectl agentops agent promote`).
local hs = {status = "Progressing", message = "Waiting for the operator to report on the Agent"}
local st = obj.status
if st == nil or st.phase == nil then
  return hs
end
local gen = obj.metadata.generation
if gen ~= nil and (st.observedGeneration == nil or st.observedGeneration < gen) then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local health = {
  Healthy = "Healthy",
  Pending = "Progressing",
  Progressing = "Progressing",
  Degraded = "Degraded",
  Paused = "Suspended",
}
hs.status = health[st.phase] or "Unknown"
local text = st.phase
if st.reason ~= nil and st.reason ~= "" then
  text = text .. " (" .. st.reason .. ")"
end
if st.message ~= nil and st.message ~= "" then
  text = text .. ": " .. st.message
end
hs.message = text
return hs
