-- Argo CD health of an ntt Medium. Install it in argocd-cm as
--   resource.customizations.health.ntt.hrdag.org_Medium: |
--     <this file>
-- It reads the controller's kstatus-style conditions (docs/cluster.md):
--   Stalled=True -> Degraded; stored content found wrong (Degraded=True, FixityFailed) ->
--   Degraded; Ready=True -> Healthy; paused -> Suspended; else Progressing.
-- A status older than the spec (observedGeneration behind) is Progressing.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the ntt controller"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the ntt controller to observe generation " .. text(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled.reason) .. ": " .. text(stalled.message)
  return hs
end

local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" and degraded.reason == "FixityFailed" then
  -- Content in the store no longer matches its hash: the archive needs someone.
  hs.status = "Degraded"
  hs.message = "FixityFailed: " .. text(degraded.message)
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "Completed"
  local health = obj.status.health
  if health ~= nil and health ~= "ok" then
    -- A medium that could not be read completely is done; its damage is in the catalog.
    hs.message = "Completed; medium health " .. text(health)
  end
  return hs
end

if obj.status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Paused by the ntt.hrdag.org/paused annotation"
  return hs
end

hs.status = "Progressing"
local progress = obj.status.progress
if progress ~= nil and progress.summary ~= nil then
  hs.message = text(obj.status.phase) .. ": " .. text(progress.summary)
else
  hs.message = text(obj.status.phase) .. ": " .. text(obj.status.reason)
end
return hs
