// Everything CleverSync runs on, in one resource group.

param location string
param tags object
param resourceToken string
param alertEmail string
param principalId string
param dashboardClientId string
param dashboardAllowedUsers string
param dashboardRole string
@secure()
param dashboardCsrfKey string
param notifySmtpHost string
param notifySmtpUser string
param notifyFrom string
param notifyTo string
param notifyOn string

var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
}

// The app's one identity: host storage, the sync queue, Key Vault and telemetry all use it.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-cleversync-${resourceToken}'
  location: location
  tags: tags
}

// --- Storage: the host's (timer locks, the deployment package) and the sync queue ---------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity only: no key to leak or rotate
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'app-package-${resourceToken}'
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The sync queue (named by the app setting CleverSyncQueueName) and the host's poison queue.
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in ['cleversync-sync', 'cleversync-sync-poison']: {
    parent: queueService
    name: queueName
  }
]

// --- Key Vault: the connection strings and Clever credentials (RBAC, no access policies) --

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    publicNetworkAccess: 'Enabled'
  }
}

// The dashboard signs its forms with this key; every instance of the app reads it.
resource dashboardCsrfSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'CleverSyncSOS--AdminPortal--CsrfKey'
  properties: {
    value: dashboardCsrfKey
  }
}

// --- Monitoring -----------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true // telemetry is accepted only with the identity's token
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-cleversync-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'cleversync' // at most 12 characters
    enabled: true
    emailReceivers: [
      {
        name: 'oncall'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// The README's alert: one ConsecutiveSyncFailures record is logged per failure streak.
resource consecutiveFailuresAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'cleversync-consecutive-failures-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'CleverSync consecutive failures'
    description: 'A school failed CleverSync__Monitoring__AlertAfterConsecutiveFailures runs in a row (Partial and Skipped runs do not count).'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
traces
| where customDimensions.EventName == "ConsecutiveSyncFailures"
| project timestamp, SchoolId = toint(customDimensions.SchoolId), DistrictId = toint(customDimensions.DistrictId),
          ConsecutiveFailures = toint(customDimensions.ConsecutiveFailures), message
'''
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false // each record is its own event: there is nothing to resolve
    skipQueryValidation: true // a new Application Insights has no traces to validate against
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// --- Role assignments -----------------------------------------------------------------------

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Whoever runs azd writes the secrets (cleversync district set-credentials, school add).
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: principalId
  }
}

// --- The function app -----------------------------------------------------------------------

module api 'app/api.bicep' = {
  name: 'api'
  params: {
    name: 'func-cleversync-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.name
    deploymentContainerName: deploymentContainer.name
    applicationInsightsName: appInsights.name
    keyVaultUrl: vault.properties.vaultUri
    dashboardClientId: dashboardClientId
    dashboardAllowedUsers: dashboardAllowedUsers
    dashboardRole: dashboardRole
    notifySmtpHost: notifySmtpHost
    notifySmtpUser: notifySmtpUser
    notifyFrom: notifyFrom
    notifyTo: notifyTo
    notifyOn: notifyOn
  }
  // The host starts reading storage, the vault and telemetry as soon as the app exists.
  dependsOn: [
    blobOwner
    queueContributor
    secretsUser
    metricsPublisher
    queues
  ]
}

output functionAppName string = api.outputs.name
output identityName string = identity.name
output identityClientId string = identity.properties.clientId
output keyVaultUrl string = vault.properties.vaultUri
