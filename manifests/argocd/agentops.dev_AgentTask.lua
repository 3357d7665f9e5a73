-- Argo CD health of an agentops.dev AgentTask, from its status (written by the operator).
--   Accepted=False (spec invalid)                         -> Degraded
--   TransitionBlocked=True, reason AwaitingApproval       -> Suspended (waits for a person, not broken)
--   TransitionBlocked=True, any other reason              -> Degraded (gate failed, illegal move, quota...)
--   resting in Done, Deployed, Cancelled or RolledBack    -> Healthy (the work has concluded)
--   anything else (Backlog, a move or gates in progress)  -> Progressing
--   Stale=True (in a phase longer than the namespace's staleAfter) keeps the health above (slow work
--   is not broken work) and says so in the message
local hs = {status = "Progressing", message = "Waiting for the operator to report on the AgentTask"}
local st = obj.status
if st == nil or st.phase == nil then
  return hs
end
local gen = obj.metadata.generation
if gen ~= nil and (st.observedGeneration == nil or st.observedGeneration < gen) then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local function condition(type_)
  if st.conditions == nil then
    return nil
  end
  for _, c in ipairs(st.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end
local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end
local accepted = condition("Accepted")
if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(accepted)
  return hs
end
local blocked = condition("TransitionBlocked")
if blocked ~= nil and blocked.status == "True" then
  if blocked.reason == "AwaitingApproval" then
    hs.status = "Suspended"
  else
    hs.status = "Degraded"
  end
  hs.message = describe(blocked)
  return hs
end
local requested = "Backlog"
if obj.spec ~= nil and obj.spec.requestedPhase ~= nil then
  requested = obj.spec.requestedPhase
end
local concluded = {Done = true, Deployed = true, Cancelled = true, RolledBack = true}
local pending = requested ~= st.phase and requested ~= "Backlog"
local stale = condition("Stale")
local stale_note = ""
if stale ~= nil and stale.status == "True" then
  stale_note = " (Stale: " .. (stale.message or "") .. ")"
end
if concluded[st.phase] and not pending then
  hs.status = "Healthy"
  hs.message = "Task is " .. st.phase .. stale_note
  return hs
end
hs.status = "Progressing"
if pending then
  hs.message = "Task is " .. st.phase .. ", moving to " .. requested
else
  hs.message = "Task is " .. st.phase
end
local progressing = condition("Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.message = hs.message .. " (" .. describe(progressing) .. ")"
end
hs.message = hs.message .. stale_note
return hs
