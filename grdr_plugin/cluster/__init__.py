"""`grdr cluster`: a local OpenSearch (with k-NN, one node or several) and a Redis, on loopback, without Docker.

Modules:
  paths          where everything lives under ``settings.home`` (each node's folders; the shareable cache)
  errors         ``ClusterError``: a message, a hint and a log tail instead of a stack trace
  java           choose a JDK >= 21
  maven          fetch artifacts with ``mvn`` into a project-local Maven repository
  artifacts      assemble the OpenSearch home (integ-test zip + lang-painless + k-NN)
  node_config    render opensearch.yml / jvm.options
  procs          pid files, process checks, the start lock, the unprivileged user under root
  http           a stdlib JSON GET for loopback health checks
  opensearch_node  start / stop / health of the single node, and spawning any node
  local_cluster  N nodes from the one install: start, stop, the node count of a home, the status listing
  redis_server   start / stop / ping of Redis
  remote         checks of whichever cluster the settings point at (`grdr doctor`), and what a failed
                 request means (the URL, the cause, the variable to change)
"""
