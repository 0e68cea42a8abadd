# tflint with its bundled "terraform" ruleset only: no plugin is downloaded
# (CI has no access to GitHub releases), so `tflint --init` is never needed.
config {
  call_module_type = "none"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
