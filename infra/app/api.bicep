// The Flex Consumption plan and the function app `azd deploy` publishes this folder to.

param name string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param keyVaultUrl string
param dashboardClientId string = ''
param dashboardAllowedUsers string = ''
param dashboardRole string = ''
param notifySmtpHost string = ''
param notifySmtpUser string = ''
param notifyFrom string = ''
param notifyTo string = ''
param notifyOn string = 'failures'
param maximumInstanceCount int = 100
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // Every setting here is checked by tests/test_infra.py against the settings the app reads.
  // Flex Consumption takes the runtime from functionAppConfig: no FUNCTIONS_* settings.
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // The host's storage through the identity (no keys): blobs for the timer and the
      // package, queues for the sync queue.
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // DefaultAzureCredential uses the user-assigned identity this names (Key Vault, queue).
      AZURE_CLIENT_ID: identityClientId
      CleverSyncSchedule: '0 0 2 * * *'
      CleverSyncQueueName: 'cleversync-sync'
      CleverSync__KeyVault__Url: keyVaultUrl
      // Large districts: fewer, bigger pages (see the README's Performance section).
      CleverSync__Sync__PageSize: '1000'
      // Who may use the dashboard (/dashboard); neither set: nobody.
      CleverSync__Admin__AllowedUsers: dashboardAllowedUsers
      CleverSync__Admin__Role: dashboardRole
      // Email run reports; the SMTP password is the vault's CleverSyncSOS--Notify--SmtpPassword.
      CleverSync__Notify__SmtpHost: notifySmtpHost
      CleverSync__Notify__SmtpUser: notifySmtpUser
      CleverSync__Notify__From: notifyFrom
      CleverSync__Notify__To: notifyTo
      CleverSync__Notify__On: notifyOn
    }
  }

  // App Service Authentication (Entra ID) for the dashboard. Anonymous requests pass (the
  // function-key routes and the health probe must keep working); the platform signs users
  // in at /.auth/login/aad and hands the app who they are in X-MS-CLIENT-PRINCIPAL, which it
  // strips from client requests, and the app admits only the users or role above.
  resource authSettings 'config' = if (!empty(dashboardClientId)) {
    name: 'authsettingsV2'
    properties: {
      platform: {
        enabled: true
      }
      globalValidation: {
        requireAuthentication: false
        unauthenticatedClientAction: 'AllowAnonymous'
      }
      httpSettings: {
        requireHttps: true
      }
      identityProviders: {
        azureActiveDirectory: {
          enabled: true
          registration: {
            openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
            clientId: dashboardClientId
          }
          validation: {
            allowedAudiences: [
              dashboardClientId
              'api://${dashboardClientId}'
            ]
          }
        }
      }
      login: {
        tokenStore: {
          enabled: false
        }
      }
    }
  }
}

output name string = app.name
