// The function app on the Flex Consumption plan (FC1, Linux) with the
// custom-handler runtime. If a region rejects runtime "custom" on Flex
// Consumption, deploy the same package to an Elastic Premium (EP1) Linux
// plan with FUNCTIONS_WORKER_RUNTIME=custom instead (docs/deploy.md).
param name string
param location string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerUrl string
@secure()
param appInsightsConnectionString string
@description('Flex Consumption accepts 40 to 1000 (Learn: "Flex Consumption plan hosting").')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int
@description('Browser origins allowed to call the API. The platform answers CORS (preflights never reach the service); the service adds Access-Control-Expose-Headers itself, which the platform cannot.')
param allowedOrigins array
@description('The service\'s own settings (see README); no secret values.')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

var platformSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
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
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 512
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      cors: {
        allowedOrigins: allowedOrigins
      }
      appSettings: [for setting in items(union(platformSettings, appSettings)): {
        name: setting.key
        value: setting.value
      }]
    }
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
