// What `azd up` provisions for CleverSync: a resource group holding a Flex Consumption
// function app (Python 3.11) with a user-assigned identity, its storage (no shared keys),
// Key Vault, Application Insights and the ConsecutiveSyncFailures alert. Laid out like
// Microsoft's azd Flex Consumption Python quickstart, with plain resources instead of
// registry modules.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; a hash of it (with the subscription and region) names the resources.')
param environmentName string

@minLength(1)
@description('Region for every resource; it must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@minLength(3)
@description('Email address that receives the ConsecutiveSyncFailures alert.')
param alertEmail string

@description('Object id of whoever runs azd (azd fills it in): granted Key Vault Secrets Officer, to store the secrets with the cleversync CLI. Empty: nobody.')
param principalId string = ''

@description('Client id of the Entra ID app registration that signs operators in to the dashboard (App Service Authentication). Empty: sign-in is not set up and the dashboard refuses everyone.')
param dashboardClientId string = ''

@description('Who may use the dashboard: sign-in names, separated by commas or semicolons (CleverSync__Admin__AllowedUsers).')
param dashboardAllowedUsers string = ''

@description('An app role of the app registration that admits its holders to the dashboard (CleverSync__Admin__Role).')
param dashboardRole string = ''

@description('Email run reports (README, Notifications): the SMTP server; empty = no email. The password is the Key Vault secret CleverSyncSOS--Notify--SmtpPassword.')
param notifySmtpHost string = ''

@description('The SMTP login (CleverSync__Notify__SmtpUser).')
param notifySmtpUser string = ''

@description('The sender address of the reports (CleverSync__Notify__From).')
param notifyFrom string = ''

@description('Who gets the reports: addresses, comma-separated (CleverSync__Notify__To).')
param notifyTo string = ''

@description('Which runs are reported: failures, always or never (CleverSync__Notify__On).')
@allowed([
  'failures'
  'always'
  'never'
])
param notifyOn string = 'failures'

@secure()
@description('The key the dashboard signs its forms with (a new random one each deployment unless given).')
param dashboardCsrfKey string = newGuid()

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    alertEmail: alertEmail
    principalId: principalId
    dashboardClientId: dashboardClientId
    dashboardAllowedUsers: dashboardAllowedUsers
    dashboardRole: dashboardRole
    dashboardCsrfKey: dashboardCsrfKey
    notifySmtpHost: notifySmtpHost
    notifySmtpUser: notifySmtpUser
    notifyFrom: notifyFrom
    notifyTo: notifyTo
    notifyOn: notifyOn
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = resources.outputs.functionAppName
// For Azure SQL: the contained user's name and the connection string's User Id.
output AZURE_FUNCTION_IDENTITY_NAME string = resources.outputs.identityName
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = resources.outputs.identityClientId
output AZURE_KEY_VAULT_ENDPOINT string = resources.outputs.keyVaultUrl
