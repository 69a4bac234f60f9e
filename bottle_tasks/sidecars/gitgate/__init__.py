"""bottle's git gate sidecar: serves git's smart HTTP protocol to the agent from a bare
mirror per remote, refreshes the mirror from the upstream (through the firewall) before a
fetch, checks a push against the remote's push policy and the firewall's DLP rules, then
pushes it upstream synchronously. The token lives only here, read by the credential helper.

Modules, one job each: ``remotes`` (the remote and push-policy model, shared with the
controller's manifest validation), ``push_policy`` (which ref updates are allowed),
``scan`` (every object a push adds, through the firewall's DLP scanner), ``batch``
(reading ``git cat-file --batch``, shared with the controller's history scan), ``upstream`` (git
commands against the upstream: proxy, CA, credential helper), ``hook`` (pre-receive),
``credential`` (the helper), ``cgi`` (git http-backend bridge), ``server`` (the HTTP
server), ``audit`` (JSON lines on stdout). In the image: /opt/bottle/gitgate.
"""
