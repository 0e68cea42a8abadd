# Terraform and provider versions. Only `terraform fmt`, tflint and the Go HCL
# test run in this project's CI (no provider can be downloaded there), so the
# constraints below are checked by `terraform init` on a deployer's machine.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # google_firestore_database, google_firestore_field.ttl_config and
      # google_cloudfunctions2_function.url all exist from 5.x on.
      version = ">= 5.40, < 8.0"
    }
    archive = {
      source = "hashicorp/archive"
      # Glob patterns (**) in archive_file.excludes need 2.4 or later.
      version = ">= 2.4, < 3.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
